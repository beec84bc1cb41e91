rule ingest:
    """Read one micrograph (any supported format) into a tiled, pyramidal OME-Zarr store."""
    input:
        image=raw_image,
    output:
        store=directory(f"{RESULTS}/images/{{sample}}.ome.zarr"),
    log:
        f"{RESULTS}/logs/ingest/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/ingest/{{sample}}.tsv"
    params:
        version=STAGE_VERSIONS["ingest"],
        chunk_px=config["ingest"]["chunk_px"],
        max_pixels=config["ingest"]["max_pixels"],
        error_json=f"{RESULTS}/errors/{{sample}}.json",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/micrometry.yaml"
    shell:
        "micrometry ingest {input.image:q} {output.store:q} --sample={wildcards.sample:q}"
        " --chunk-px {params.chunk_px} --max-pixels {params.max_pixels}"
        " --error-json {params.error_json:q} > {log:q} 2>&1"
