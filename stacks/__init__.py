"""CDK stacks and constructs: one game config in, that game's AWS account out.

`game.build_app` wires a config into one stack per concern (`DataLakeStack`, `AlertsStack`,
`EtlStack`, `MlStack`, `ScoringStack`, `MonitoringStack`), each built from small constructs that
expose their resources as attributes. `app.py` only calls `build_app`.
"""
