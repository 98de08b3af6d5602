"""The wire: versioned envelopes, the zmq CURVE transport and its in-memory twin."""
