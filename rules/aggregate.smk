rule dataset_inputs:
    """The dataset's sample names and the input files refused at discovery, one JSON file
    that the aggregate job reads (its command line could not hold them: Linux passes at
    most 128 KiB as one argument, a few thousand sample names).  It changes, and the
    aggregate reruns, only when the set of samples does."""
    output:
        f"{RESULTS}/dataset/inputs.json",
    log:
        f"{RESULTS}/logs/dataset_inputs.log",
    params:
        samples=list(SAMPLES),
        refused=as_json(REFUSED_INPUTS),
    localrule: True
    run:
        from micrometry.stages import write_dataset_inputs

        write_dataset_inputs(output[0], params.samples, json.loads(params.refused), log=log[0])


rule aggregate_dataset:
    """Dataset-wide tables (all objects; one row per image) and size plots."""
    input:
        objects=expand(f"{RESULTS}/objects/{{sample}}.parquet", sample=SAMPLES),
        calibration=expand(f"{RESULTS}/calibration/{{sample}}.json", sample=SAMPLES),
        segment=expand(f"{RESULTS}/segment/{{sample}}.json", sample=SAMPLES),
        inputs=f"{RESULTS}/dataset/inputs.json",
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
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/micrometry.yaml"
    shell:
        "micrometry aggregate {params.results:q} {params.out_dir:q} --params {params.settings:q}"
        " --inputs {input.inputs:q} > {log:q} 2>&1"
