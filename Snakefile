# micrometry: micrographs -> calibrated morphology tables.
# This file is a table of contents; logic lives in src/micrometry, rules call its CLI.
import os

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config", "config.yaml")


validate(config, "config/schema.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/ingest.smk"
include: "rules/calibrate.smk"
include: "rules/segment.smk"
include: "rules/measure.smk"
include: "rules/aggregate.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"


onstart:
    start_run()


rule all:
    input:
        get_final_output(),
    default_target: True
