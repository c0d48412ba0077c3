"""The event gateway: an AWS Lambda handler (``binsight.gateway.handler.lambda_handler``) that fetches an
image safely and asks a prediction endpoint about it. Imports no torch; see docs/gateway.md."""
