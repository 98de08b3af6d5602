"""The HTTP API: a Flask app factory, one blueprint per area, errors mapped in one place.

This package imports neither zmq nor git; it reaches the node through the
services facade handed to create_app (see baton.node.services.NodeServices).
"""

from baton.api.app import create_app, create_door_app

__all__ = ["create_app", "create_door_app"]
