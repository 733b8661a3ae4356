"""The clients' drivers: small standalone scripts, each run as its own process by the harness.

``lorry_*`` run with lorry's venv; the peers' drivers with ``bench/.venv-peers``. Each prints one JSON
line on stdout when it is done (the seconds its operation took inside the process, and what it knows).
"""
