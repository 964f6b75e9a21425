"""The gate's rule types: one schema file each here, as Vale keeps one check per file
(``internal/check/existence.go``), and the check it compiles into in :mod:`sovereign_mcp.gate.checks`.

A rule type's schema file holds the data schema (the entry's front-matter keys and ```` ```yaml ```` block,
unknown keys refused), the validators and ``compile()``, which builds the check once (phrase automata,
regular expressions; the KB loader reports a failure with the entry file's path and the data field), the
prompt lines that tell a writer about the rule, and, when several rules of the type in one scope must act as
one (the CAPS allowlists), its ``combine`` step. The check (``gate/checks/<type>.py``) is plain Python with no
pydantic, so ``sovereign-mcp gate`` can load cached plans of checks without the validation stack.

Adding a rule type = its schema here (a subclass of :class:`sovereign_mcp.gate.rules.base.Rule`), its check
in ``gate/checks/``, and one line in :data:`sovereign_mcp.gate.rules.registry.RULES` (its ``type:`` name).
The KB loader validates entries of that type with it and the engine runs it; neither needs a change.
"""
