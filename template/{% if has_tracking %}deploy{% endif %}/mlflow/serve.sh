#!/bin/sh
# The team's MLflow server, started as its image starts it (the Dockerfile's command; the
# template's tests start it with this script too). MLflow's basic auth reads the logins'
# database from auth.ini alone, so MLFLOW_AUTH_DATABASE_URI, when set, goes into a copy of
# it (postgresql+psycopg://<user>@<host>:5432/<database>: the password comes from
# PGPASSWORD, a Secret, never from the URI). MLFLOW_HOST and MLFLOW_PORT say where it
# listens; anything after the script's name goes to `mlflow server` (--workers 4).
set -eu
if [ -n "${MLFLOW_AUTH_DATABASE_URI:-}" ]; then
    copy="$(mktemp "${TMPDIR:-/tmp}/mlflow-auth-XXXXXX.ini")"
    python3 - "${MLFLOW_AUTH_CONFIG_PATH:-/etc/mlflow/auth.ini}" "$copy" <<'PYTHON'
import configparser
import os
import sys

config = configparser.RawConfigParser()
if not config.read(sys.argv[1]):
    sys.exit(f"serve.sh: no auth config at {sys.argv[1]}")
config["mlflow"]["database_uri"] = os.environ["MLFLOW_AUTH_DATABASE_URI"]
with open(sys.argv[2], "w", encoding="utf-8") as copy:
    config.write(copy)
PYTHON
    export MLFLOW_AUTH_CONFIG_PATH="$copy"
fi
exec mlflow server --app-name basic-auth \
    --host "${MLFLOW_HOST:-0.0.0.0}" --port "${MLFLOW_PORT:-5000}" "$@"
