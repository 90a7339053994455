import pytest
from pydantic import ValidationError

from harness.config import Settings, load_settings


def test_precedence_flags_over_env_over_file(tmp_path, monkeypatch):
    f = tmp_path / "s.toml"
    f.write_text('profile = "zero"\nseed = 5\n[ports]\nnova = 18774\n')
    monkeypatch.setenv("HARNESS_SEED", "6")
    s = load_settings(f, hosts=3)
    assert s.profile == "zero" and s.seed == 6 and s.ports.nova == 18774 and s.hosts == 3
    s = load_settings(f, seed=7)
    assert s.seed == 7


def test_bad_values_are_named():
    with pytest.raises(ValidationError, match="hosts"):
        Settings(hosts=0)
    with pytest.raises(ValidationError, match="no_such_knob"):
        Settings(no_such_knob=1)
    with pytest.raises(FileNotFoundError, match="missing.toml"):
        load_settings("missing.toml")


def test_dump_masks_passwords():
    data = Settings().dump()
    assert all(a["password"] == "***" for a in data["accounts"])
    assert Settings().catalog_host == "127.0.0.1"
