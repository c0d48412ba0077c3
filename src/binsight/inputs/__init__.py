"""Strict parsing of untrusted request input, shared by the model server (``binsight.serving``) and the event
gateway (``binsight.gateway``): JSON with depth and integer-size limits, bounded whole numbers, SageMaker's
custom attributes, and image checks done before any pixel is decoded. Standard library and Pillow only, so
it ships inside the gateway's Lambda zip."""
