"""qa.toml: settings beneath the environment and the command line, checked, documented precedence."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from qa.config import ConfigError, apply_config, read_config

TESTS = Path(__file__).parent


def write(tmp_path, text):
    path = tmp_path / "qa.toml"
    path.write_text(text)
    return path


def test_settings_fill_only_unset_variables(tmp_path):
    settings = read_config(write(tmp_path, 'index_dir = "~/idx"\nmodel = "e5-small"\ntop_k = 3\ncolor = false\nlog = false\n'))
    environ = {"QA_MODEL": "from-env"}
    apply_config(settings, environ)
    assert environ == {"QA_MODEL": "from-env", "QA_INDEX_DIR": "~/idx", "QA_TOP_K": "3", "NO_COLOR": "1", "QA_LOG": "0"}


def test_no_file_is_no_settings(tmp_path):
    assert read_config(tmp_path / "absent.toml") == {}


@pytest.mark.parametrize("text, fragment", [
    ("top_k = ", "not valid TOML"), ('colour = false', "unknown setting 'colour'"),
    ('top_k = "3"', "top_k must be a int"), ("top_k = true", "top_k must be a int"), ("model = 5", "model must be a str"),
])
def test_a_bad_file_is_a_one_line_error(tmp_path, text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        read_config(write(tmp_path, text))


def run(tmp_path, *args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k not in {"QA_INDEX_DIR", "QA_TOP_K", "QA_MODEL"}}
    env.update({"QA_CONFIG": str(tmp_path / "qa.toml"), **(env_extra or {})})
    return subprocess.run([sys.executable, str(TESTS / "fake_qa.py"), *args], env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.slow  # real qa processes: seconds
def test_precedence_option_then_environment_then_file(fake_model, tmp_path):
    write(tmp_path, f'index_dir = "{tmp_path / "from-file"}"\nmodel = "fake-hash"\ntop_k = 2\n')
    assert run(tmp_path, "index").returncode == 0
    assert (tmp_path / "from-file" / "CURRENT").exists()  # the file's index_dir and model
    two = run(tmp_path, "ask", "--json", "Mohajer-6 Shahed drone Iran")
    import json

    assert len(json.loads(two.stdout)["passages"]) == 2  # the file's top_k
    three = run(tmp_path, "ask", "--json", "Mohajer-6 Shahed drone Iran", env_extra={"QA_TOP_K": "3"})
    assert len(json.loads(three.stdout)["passages"]) == 3  # the environment beats the file
    one = run(tmp_path, "ask", "--json", "-k", "1", "Mohajer-6 Shahed drone Iran", env_extra={"QA_TOP_K": "3"})
    assert len(json.loads(one.stdout)["passages"]) == 1  # the option beats both


def test_a_broken_config_file_stops_qa_in_one_line(tmp_path):
    write(tmp_path, "top_k = [")
    done = run(tmp_path, "sources")
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "not valid TOML" in done.stderr
