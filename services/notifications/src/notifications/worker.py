"""``python -m notifications.worker``: the relay, consumers and background jobs without the HTTP API,
for scaling them apart from the API replicas."""

from notifications.__main__ import run

if __name__ == "__main__":
    run(["worker"])
