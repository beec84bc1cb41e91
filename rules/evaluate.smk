# Ground-truth evaluation on the EMPS validation split (needs ../shared/data/emps-train or
# $MICROMETRY_EMPS_DIR); not part of `rule all`:  snakemake --cores 2 evaluate
EVAL_METHODS = ("classical", "flow")


rule evaluate_method:
    """AP_cp@0.5/0.75/0.9, F1@0.5 and mean matched IoU of one method on one EMPS split."""
    input:
        model=lambda wildcards: (
            [str(model_dir() / "weights.safetensors")] if wildcards.method == "flow" else []
        ),
    output:
        json=f"{RESULTS}/evaluation/{{method}}_{{split}}.json",
    log:
        f"{RESULTS}/logs/evaluate/{{method}}_{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{method}}_{{split}}.tsv"
    wildcard_constraints:
        method="|".join(EVAL_METHODS),
        split="val|train",
    params:
        version=STAGE_VERSIONS["evaluate"],
        settings=lambda wildcards: as_json(
            {**{k: v for k, v in config["segment"].items() if k != "roi_dir"}, "method": wildcards.method}
        ),
        model=model_arg,
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../envs/micrometry.yaml"
    shell:
        "micrometry evaluate-emps --settings {params.settings:q} --split {wildcards.split}"
        " {params.model} --threads {threads} --output {output.json:q} > {log:q} 2>&1"


rule evaluate:
    """Both methods on the validation split."""
    input:
        expand(f"{RESULTS}/evaluation/{{method}}_val.json", method=EVAL_METHODS),
    localrule: True
