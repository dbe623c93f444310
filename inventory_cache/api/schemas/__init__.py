"""Request and response bodies of the API, one module per area (`common` for what they
share), with the limits of `validation.py` in the schema. Routes import their models from
here; a model's class name is its component name in the OpenAPI document.

Request bodies are strict: unknown fields are refused and integers must be JSON integers
(`1.5`, `"3"` and `true` are 422), so the OpenAPI document tells clients exactly what is
accepted. The engine checks the same rules again; these models are the first gate and
the documentation.
"""
