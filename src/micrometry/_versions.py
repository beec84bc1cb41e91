"""Stage version strings.

Snakemake does not see changes in imported Python modules.  Each stage's
``params`` carries its version string from here, so bumping one after a change
in behaviour deliberately reruns that stage (and everything downstream of it)
and nothing else.
"""

STAGE_VERSIONS: dict[str, str] = {
    "ingest": "1",
    "calibrate": "11",
    "segment": "2",
    "measure": "1",
    "qc": "1",
    "aggregate": "1",
    "train": "1",
    "evaluate": "1",
}
