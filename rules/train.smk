# Training is not part of `rule all`: ask for it by name, e.g.
#   snakemake --cores 2 train --config results_dir=runs
# Two stages, as the shipped model was made: config/train.yaml from scratch, then
# config/train-finetune.yaml starting from it.  The model directory lands in
# {results}/models/flow-light; copy it to models/ to ship it.
TRAIN_RECIPE = Path(workflow.basedir) / "config" / "train.yaml"
FINETUNE_RECIPE = Path(workflow.basedir) / "config" / "train-finetune.yaml"


rule train_flow_model_stage1:
    """Train the flow segmentation network from scratch on EMPS (train split, by DOI) + synthetic micrographs."""
    input:
        recipe=str(TRAIN_RECIPE),
    output:
        model=directory(f"{RESULTS}/models/stage1/{{model}}"),
    log:
        f"{RESULTS}/logs/train/{{model}}-stage1.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{model}}-stage1.tsv"
    wildcard_constraints:
        model=r"[^/]+",
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


rule train_flow_model:
    """Continue training the stage-1 network with fresh crops and a lower learning-rate schedule."""
    input:
        recipe=str(FINETUNE_RECIPE),
        stage1=f"{RESULTS}/models/stage1/{{model}}",
    output:
        model=directory(f"{RESULTS}/models/{{model}}"),
    log:
        f"{RESULTS}/logs/train/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{model}}.tsv"
    wildcard_constraints:
        model=r"[^/]+",
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
        " --set threads={threads} --set model.init_from={input.stage1:q} > {log:q} 2>&1"


rule train:
    """The default model recipe (both stages)."""
    input:
        f"{RESULTS}/models/flow-light",
    localrule: True
