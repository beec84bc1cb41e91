# Training is not part of `rule all`: ask for it by name, e.g.
#   snakemake --cores 2 train_flow_model --config results_dir=runs
# The model directory lands in {results}/models/flow-light; copy it to models/ to ship it.
TRAIN_RECIPE = Path(workflow.basedir) / "config" / "train.yaml"


rule train_flow_model:
    """Train the flow segmentation network on EMPS (train split, by DOI) + synthetic micrographs."""
    input:
        recipe=str(TRAIN_RECIPE),
    output:
        model=directory(f"{RESULTS}/models/{{model}}"),
    log:
        f"{RESULTS}/logs/train/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{model}}.tsv"
    params:
        version=STAGE_VERSIONS["train"],
    threads: workflow.cores
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=0,
    conda:
        "../envs/micrometry.yaml"
    shell:
        "micrometry train --config {input.recipe:q} --out {output.model:q}"
        " --set threads={threads} > {log:q} 2>&1"


rule train:
    """The default model recipe."""
    input:
        f"{RESULTS}/models/flow-light",
    localrule: True
