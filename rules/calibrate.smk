rule calibrate:
    """Pixel size in nm: per-image override, then instrument metadata, then none."""
    input:
        image=raw_image,
        overrides=config["calibration"]["overrides_csv"] or [],
    output:
        json=f"{RESULTS}/calibration/{{sample}}.json",
    log:
        f"{RESULTS}/logs/calibrate/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/calibrate/{{sample}}.tsv"
    params:
        version=STAGE_VERSIONS["calibrate"],
        overrides=(
            f"--overrides {config['calibration']['overrides_csv']}"
            if config["calibration"]["overrides_csv"]
            else ""
        ),
        scalebar="--scalebar" if config["calibration"]["scalebar"] else "--no-scalebar",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/micrometry.yaml"
    shell:
        "micrometry calibrate {input.image:q} --sample {wildcards.sample:q} --output {output.json:q}"
        " {params.overrides} {params.scalebar} > {log:q} 2>&1"
