"""The one core below the protocol adapters: request bodies, the billed model call, framework-neutral answers."""
