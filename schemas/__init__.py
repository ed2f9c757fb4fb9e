"""Every artifact logitfuse writes, declared once with a name and version."""
