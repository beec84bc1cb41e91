rule measure:
    """One row per object, in pixels and (when calibrated) nanometres."""
    input:
        store=f"{RESULTS}/images/{{sample}}.ome.zarr",
        calibration=f"{RESULTS}/calibration/{{sample}}.json",
        segment=f"{RESULTS}/segment/{{sample}}.json",
    output:
        objects=f"{RESULTS}/objects/{{sample}}.parquet",
        # QC figures are made in the same job (one process, one job per image less to plan)
        overlay=report(
            f"{RESULTS}/qc/{{sample}}.png",
            caption="../report/qc.rst",
            category="Per image",
            subcategory="{sample}",
            labels={"image": "{sample}", "figure": "outlines"},
        ),
        sizes=report(
            f"{RESULTS}/plots/per_image/{{sample}}.png",
            caption="../report/sizes.rst",
            category="Per image",
            subcategory="{sample}",
            labels={"image": "{sample}", "figure": "size distribution"},
        ),
    log:
        f"{RESULTS}/logs/measure/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/measure/{{sample}}.tsv"
    params:
        version=STAGE_VERSIONS["measure"],
        qc_version=STAGE_VERSIONS["qc"],
        min_confidence=config["calibration"]["min_confidence"],
        low_confidence=(
            "--use-low-confidence" if config["calibration"]["use_low_confidence"] else ""
        ),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/micrometry.yaml"
    shell:
        "micrometry measure {input.store:q} {input.calibration:q} {input.segment:q} {output.objects:q}"
        " --sample={wildcards.sample:q} --min-confidence {params.min_confidence}"
        " {params.low_confidence} --overlay {output.overlay:q} --sizes {output.sizes:q} > {log:q} 2>&1"
