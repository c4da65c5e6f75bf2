"""Airflow settings for the tests (the same as dev/airflow.sh), set before Airflow loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

AIRFLOW_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = AIRFLOW_DIR.parent
DAGS = AIRFLOW_DIR / "dags"

os.environ.setdefault("AIRFLOW_HOME", str(REPO_ROOT / ".infra" / "airflow"))
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ.setdefault(
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{os.environ['AIRFLOW_HOME']}/airflow.db"
)
os.environ.setdefault("TRIBUTARY_BIN", str(REPO_ROOT / "target" / "release" / "tributary"))
# A failing task retries after 1 s here, not 5 min (the structure tests check the defaults).
os.environ.setdefault("TRIBUTARY_RETRY_DELAY_SECONDS", "1")
sys.path.insert(0, str(DAGS))
sys.path.insert(0, str(Path(__file__).resolve().parent))

_db = Path(os.environ["AIRFLOW_HOME"]) / "airflow.db"
if os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite") and not _db.exists():
    _db.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], check=True,
                   stdout=subprocess.DEVNULL)
