rule segment:
    """Instance segmentation into labels/instances of the image's store; the summary
    JSON is the rule's declared output (a file inside the store cannot be one)."""
    input:
        store=f"{RESULTS}/images/{{sample}}.ome.zarr",
        roi=roi_mask if config["segment"]["roi_dir"] else [],
        model=segment_model(),  # weights first: model_arg takes its folder
    output:
        summary=f"{RESULTS}/segment/{{sample}}.json",
    log:
        f"{RESULTS}/logs/segment/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/segment/{{sample}}.tsv"
    params:
        version=STAGE_VERSIONS["segment"],
        settings=segment_settings(),
        model_sha256=segment_model_sha256(),
        model=model_arg,
        # no per-job function unless an ROI folder is configured: Snakemake inspects each
        # one for every job it plans
        roi=(lambda wildcards, input: f"--roi {input.roi[0]}" if input.roi else "")
        if config["segment"]["roi_dir"] else "",
        # where tiles run is not a result, so it must not trigger reruns: Snakemake does not
        # record params derived from the input (a function taking `input`)
        dask=lambda wildcards, input: dask_option(),
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/micrometry.yaml"
    shell:
        "micrometry segment {input.store:q} {output.summary:q} --sample={wildcards.sample:q}"
        " --settings {params.settings:q} {params.roi} {params.model} --threads {threads}"
        " --mem-mb {resources.mem_mb} {params.dask}"
        " > {log:q} 2>&1"
