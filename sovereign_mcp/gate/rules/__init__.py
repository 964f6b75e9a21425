"""The gate's rule types, one file each, as Vale keeps one check per file (``internal/check/existence.go``).

A rule type's file holds all of it: the data schema (the entry's front-matter keys and ```` ```yaml ````
block, unknown keys refused), the constructor that validates and compiles it once (phrase automata,
regular expressions; the KB loader reports a failure with the entry file's path and the data field), the
check over a prepared document, the prompt lines that tell a writer about the rule, and, when several
rules of the type in one scope must act as one (the CAPS allowlists), its ``combine`` step.

Adding a rule type = one new file here with a subclass of :class:`sovereign_mcp.gate.rules.base.Rule`,
plus one line in :data:`sovereign_mcp.gate.rules.registry.RULES` (its ``type:`` name). The KB loader
validates entries of that type with it and the engine runs it; neither needs a change.
"""
