"""Alt text for images: the image input (:mod:`.images`), the WAI checks of an alt text (:mod:`.lint`) and the
captioner that asks the local vision model through the inference chain (:mod:`.captioner`). Usable without
the MCP layer; ``sovereign-mcp caption`` / ``alt-lint`` and the paid ``caption_image`` tool sit on top."""
