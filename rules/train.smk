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
        init="",  # stage 2: --set model.init_from=STAGE1
    threads: workflow.cores
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=0,
    conda:
        "../envs/micrometry.yaml"
    shell:
        "micrometry train --config {input.recipe:q} --out {output.model:q}"
        " --set threads={threads} {params.init} > {log:q} 2>&1"


use rule train_flow_model_stage1 as train_flow_model with:
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
    params:
        version=STAGE_VERSIONS["train"],
        init=lambda wildcards, input: f"--set model.init_from={shlex.quote(input.stage1)}",


rule train:
    """The default model recipe (both stages)."""
    input:
        f"{RESULTS}/models/flow-light",
    localrule: True


DETECTOR_RECIPE = Path(workflow.basedir) / "config" / "train-scalebar.yaml"
DETECTOR_FINETUNE = Path(workflow.basedir) / "config" / "train-scalebar-finetune.yaml"
DETECTOR_STAGE3 = Path(workflow.basedir) / "config" / "train-scalebar-stage3.yaml"
DETECTOR_ARCH = Path(workflow.basedir) / "config" / "scalebar-yolo.yaml"


rule train_scalebar_detector_stage1:
    """Render synthetic micrographs with scale bars and distractors; train the YOLO bar/label detector from scratch."""
    input:
        recipe=str(DETECTOR_RECIPE),
        architecture=str(DETECTOR_ARCH),
    output:
        detector=directory(f"{RESULTS}/models/detectors/stage1/scalebar-yolo"),
    log:
        f"{RESULTS}/logs/train/scalebar-yolo-stage1.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/scalebar-yolo-stage1.tsv"
    params:
        version=STAGE_VERSIONS["train"],
        init="",  # stages 2 and 3: --set init_from=PREVIOUS
    threads: workflow.cores
    resources:
        mem_mb=8000,
        runtime=180,
        gpu=0,
    conda:
        "../envs/micrometry.yaml"
    shell:
        "micrometry train-scalebar --config {input.recipe:q} --out {output.detector:q}"
        " --set architecture={input.architecture:q} {params.init} --set train.threads={threads}"
        " --set data.workers={threads} --set train.workers={threads}"
        " > {log:q} 2>&1"


use rule train_scalebar_detector_stage1 as train_scalebar_detector_stage2 with:
    """Continue training the stage-1 detector on freshly rendered images at a lower learning rate."""
    input:
        recipe=str(DETECTOR_FINETUNE),
        architecture=str(DETECTOR_ARCH),
        previous=f"{RESULTS}/models/detectors/stage1/scalebar-yolo",
    output:
        detector=directory(f"{RESULTS}/models/detectors/stage2/scalebar-yolo"),
    log:
        f"{RESULTS}/logs/train/scalebar-yolo-stage2.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/scalebar-yolo-stage2.tsv"
    params:
        version=STAGE_VERSIONS["train"],
        init=lambda wildcards, input: f"--set init_from={shlex.quote(input.previous)}",


use rule train_scalebar_detector_stage2 as train_scalebar_detector with:
    """Stage 3 (shipped): continue from stage 2 on more fresh images at a lower learning rate."""
    input:
        recipe=str(DETECTOR_STAGE3),
        architecture=str(DETECTOR_ARCH),
        previous=f"{RESULTS}/models/detectors/stage2/scalebar-yolo",
    output:
        detector=directory(f"{RESULTS}/models/detectors/scalebar-yolo"),
    log:
        f"{RESULTS}/logs/train/scalebar-yolo.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/scalebar-yolo.tsv"


rule train_scalebar:
    """The scale-bar detector recipe, all three stages (copy the result to models/scalebar-yolo to ship it)."""
    input:
        f"{RESULTS}/models/detectors/scalebar-yolo",
    localrule: True


LABEL_READER_RECIPE = Path(workflow.basedir) / "config" / "train-label-reader.yaml"
LABEL_READER_STRIDE2_RECIPE = Path(workflow.basedir) / "config" / "train-label-reader-stride2.yaml"


rule train_label_reader:
    """The scale-label recognizer (CRNN + CTC) on label crops of synthetic micrographs
    (copy the result to models/scalebar-label-reader to ship it)."""
    input:
        recipe=str(LABEL_READER_RECIPE),
    output:
        reader=directory(f"{RESULTS}/models/label-readers/scalebar-label-reader"),
    log:
        f"{RESULTS}/logs/train/scalebar-label-reader.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/scalebar-label-reader.tsv"
    params:
        version=STAGE_VERSIONS["train"],
    threads: workflow.cores
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=0,
    conda:
        "../envs/micrometry.yaml"
    shell:
        "micrometry train-label-reader --config {input.recipe:q} --out {output.reader:q}"
        " --set train.threads={threads} --set data.workers={threads} > {log:q} 2>&1"


rule train_label_reader_stride2:
    """The second reader of the pair: the same recipe with one frame per 2 input columns
    (copy the result to models/scalebar-label-reader/stride2 to ship it)."""
    input:
        recipe=str(LABEL_READER_STRIDE2_RECIPE),
    output:
        reader=directory(f"{RESULTS}/models/label-readers/scalebar-label-reader-stride2"),
    log:
        f"{RESULTS}/logs/train/scalebar-label-reader-stride2.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/scalebar-label-reader-stride2.tsv"
    params:
        version=STAGE_VERSIONS["train"],
    threads: workflow.cores
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=0,
    conda:
        "../envs/micrometry.yaml"
    shell:
        "micrometry train-label-reader --config {input.recipe:q} --out {output.reader:q}"
        " --set train.threads={threads} --set data.workers={threads} > {log:q} 2>&1"
