import identity.import_models  # noqa: F401 - its tables belong to the same history
from identity.models import metadata
from shared.migrations import run_env

run_env(metadata)
