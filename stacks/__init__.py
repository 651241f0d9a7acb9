"""CDK stacks and constructs: one game config in, that game's AWS account out.

`game.build_app` wires a config into one stack per concern (`DataLakeStack`, `EtlStack`; later
issues add the ML pipeline, scoring and monitoring), each built from small constructs that
expose their resources as attributes. `app.py` only calls `build_app`.
"""
