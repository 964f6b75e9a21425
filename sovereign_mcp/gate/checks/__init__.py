"""The compiled form of each rule type, one file each beside its schema in :mod:`sovereign_mcp.gate.rules`.

A rule's schema (pydantic, validated at KB load) compiles once into one of these plain classes
(``Rule.compile``); the engine runs only these. They import no pydantic, so ``sovereign-mcp gate`` can load a
cached plan of them (:mod:`sovereign_mcp.gate.snapshot`) without the validation stack. Adding a rule type:
its check here, its schema in ``gate/rules/``, one line in ``gate/rules/registry.py``.
"""
