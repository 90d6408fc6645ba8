"""``python -m identity.worker``: the relay, consumers and background jobs without the HTTP API,
for scaling them apart from the API replicas."""

from identity.__main__ import run

if __name__ == "__main__":
    run(["worker"])
