CALIBRATE_DETECTOR_SHA256 = calibrate_detector_sha256()
CALIBRATE_DETECTOR_OPTION = detector_option()
CALIBRATE_LABEL_READER_SHA256 = calibrate_label_reader_sha256()


rule calibrate:
    """Pixel size in nm: per-image override, then instrument metadata, then the scale bar, then none."""
    input:
        image=raw_image,
    output:
        json=f"{RESULTS}/calibration/{{sample}}.json",
    log:
        f"{RESULTS}/logs/calibrate/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/calibrate/{{sample}}.tsv"
    params:
        version=STAGE_VERSIONS["calibrate"],
        override_nm_per_px=calibration_override,  # the table is read by the job; its row triggers reruns
        overrides=(
            f"--overrides {config['calibration']['overrides_csv']}"
            if config["calibration"]["overrides_csv"]
            else ""
        ),
        scalebar="--scalebar" if config["calibration"]["scalebar"] else "--no-scalebar",
        detector_sha256=CALIBRATE_DETECTOR_SHA256,
        label_reader_sha256=CALIBRATE_LABEL_READER_SHA256,
        detector=CALIBRATE_DETECTOR_OPTION,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        "../envs/micrometry.yaml"
    shell:
        "micrometry calibrate {input.image:q} --sample={wildcards.sample:q} --output {output.json:q}"
        " {params.overrides} {params.scalebar} {params.detector} --threads {threads} > {log:q} 2>&1"
