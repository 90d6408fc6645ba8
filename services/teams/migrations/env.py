from shared.migrations import run_env
from teams.models import metadata

run_env(metadata)
