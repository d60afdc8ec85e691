"""The appliance: an HTTP server over the runtime (an app layer, like the CLI; nothing imports it)."""
