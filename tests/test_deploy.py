"""The production stack's files, checked as far as a machine without a Docker engine can.

`docker compose config` needs the compose plugin, absent here; DEPLOY.md says what was validated how.
"""

import os
import re
import subprocess
import sys

import yaml

from resources.settings import PROJECT_ROOT

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
ENV_EXAMPLE = dict(
    line.split("=", 1) for line in (PROJECT_ROOT / ".env.example").read_text().splitlines()
    if line and not line.startswith("#")
)
PRODUCTION_ENV = {
    "DATABASE_URL": "postgresql://corpus:secret-pg@postgres.invalid:5432/corpus",
    "QDRANT_URL": "http://qdrant.invalid:6333",
    "QDRANT_API_KEY": "secret-qdrant",
    "NEO4J_URI": "bolt://neo4j.invalid:7687",
    "NEO4J_PASSWORD": "secret-neo4j",
}


def test_every_service_has_a_health_check_and_listens_on_localhost_only():
    services = COMPOSE["services"]
    assert {"postgres", "qdrant", "neo4j", "code", "webserver", "daemon"} <= set(services)
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"
        for dependency in service.get("depends_on", {}).values():
            assert dependency["condition"] == "service_healthy"


def test_every_secret_comes_from_the_env_file():
    text = (PROJECT_ROOT / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    assert required == {"POSTGRES_PASSWORD", "QDRANT_API_KEY", "NEO4J_PASSWORD"}
    assert required <= set(ENV_EXAMPLE)
    assert ".env" in (PROJECT_ROOT / ".gitignore").read_text().split()


def test_definitions_load_and_point_at_the_servers_under_a_production_environment(tmp_path):
    """`dagster definitions validate` loads the code location with server URLs set; nothing is
    contacted or started, and the stores are configured from the environment, not from literals."""
    env = {**os.environ, **PRODUCTION_ENV, "CORPUS_STATE_DIR": str(tmp_path / "state")}
    env.pop("DAGSTER_HOME", None)
    dagster = str(PROJECT_ROOT / ".venv" / "bin" / "dagster") if (PROJECT_ROOT / ".venv").exists() else "dagster"
    validated = subprocess.run([dagster, "definitions", "validate", "-m", "corpus_assets.definitions"],
                               env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "Validation successful" in validated.stdout + validated.stderr

    probe = "from corpus_assets.definitions import defs\nprint(defs.resources)"
    configured = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                                cwd=tmp_path, timeout=300)
    assert configured.returncode == 0, configured.stderr
    # EnvVars show their names: the values are resolved when a run starts, never baked in.
    for field, name in [("database_url", "DATABASE_URL"), ("url", "QDRANT_URL"), ("api_key", "QDRANT_API_KEY"),
                        ("uri", "NEO4J_URI"), ("password", "NEO4J_PASSWORD")]:
        assert f"{field}='{name}'" in configured.stdout, configured.stdout
    assert "secret" not in configured.stdout
    assert not (tmp_path / "state" / "postgres").exists()  # no embedded server was started
