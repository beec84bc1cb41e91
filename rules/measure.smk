rule measure:
    """One row per object, in pixels and (when calibrated) nanometres."""
    input:
        store=f"{RESULTS}/images/{{sample}}.ome.zarr",
        calibration=f"{RESULTS}/calibration/{{sample}}.json",
        segment=f"{RESULTS}/segment/{{sample}}.json",
    output:
        objects=f"{RESULTS}/objects/{{sample}}.parquet",
    log:
        f"{RESULTS}/logs/measure/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/measure/{{sample}}.tsv"
    params:
        version=STAGE_VERSIONS["measure"],
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
        " {params.low_confidence} > {log:q} 2>&1"


rule qc:
    """Outline overlay and size distribution of one image."""
    input:
        store=f"{RESULTS}/images/{{sample}}.ome.zarr",
        calibration=f"{RESULTS}/calibration/{{sample}}.json",
        segment=f"{RESULTS}/segment/{{sample}}.json",
        objects=f"{RESULTS}/objects/{{sample}}.parquet",
    output:
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
        f"{RESULTS}/logs/qc/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/qc/{{sample}}.tsv"
    params:
        version=STAGE_VERSIONS["qc"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        "../envs/micrometry.yaml"
    shell:
        "micrometry qc {input.store:q} {input.calibration:q} {input.segment:q} {input.objects:q}"
        " {output.overlay:q} {output.sizes:q} --sample={wildcards.sample:q} > {log:q} 2>&1"
