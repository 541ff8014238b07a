"""Messages we send: creation, API resolution, the delivery state machine, rate
limits, provider status updates, cost and the reconciler."""
