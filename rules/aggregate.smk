rule aggregate_dataset:
    """Dataset-wide tables (all objects; one row per image) and size plots."""
    input:
        objects=expand(f"{RESULTS}/objects/{{sample}}.parquet", sample=SAMPLES),
        calibration=expand(f"{RESULTS}/calibration/{{sample}}.json", sample=SAMPLES),
        segment=expand(f"{RESULTS}/segment/{{sample}}.json", sample=SAMPLES),
    output:
        objects=report(
            f"{RESULTS}/dataset/objects.parquet",
            caption="../report/objects.rst",
            category="Dataset",
        ),
        images=report(
            f"{RESULTS}/dataset/images.parquet",
            caption="../report/images.rst",
            category="Dataset",
        ),
        sizes=report(
            f"{RESULTS}/dataset/size_distribution.png",
            caption="../report/dataset_sizes.rst",
            category="Dataset",
        ),
        sizes_by_image=report(
            f"{RESULTS}/dataset/size_distribution_by_image.png",
            caption="../report/dataset_sizes.rst",
            category="Dataset",
        ),
        summary=report(
            f"{RESULTS}/dataset/summary.png",
            caption="../report/summary.rst",
            category="Dataset",
        ),
    log:
        f"{RESULTS}/logs/aggregate.log",
    benchmark:
        f"{RESULTS}/benchmarks/aggregate.tsv"
    params:
        version=STAGE_VERSIONS["aggregate"],
        results=lambda wildcards, output: str(Path(output.objects).parent.parent),
        out_dir=lambda wildcards, output: str(Path(output.objects).parent),
        settings=as_json(config["aggregate"]),
        samples=list(SAMPLES),
        refused=as_json(REFUSED_INPUTS),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/micrometry.yaml"
    shell:
        "micrometry aggregate {params.results:q} {params.out_dir:q} --params {params.settings:q}"
        " --samples {params.samples:q} --refused {params.refused:q} > {log:q} 2>&1"
