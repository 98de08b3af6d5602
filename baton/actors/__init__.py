"""pykka actors: thin shells that hold state and run core logic (no zmq, flask or git here)."""
