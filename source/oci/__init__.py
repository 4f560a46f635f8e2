"""What an OCIRepository names to pull (``reference``); the registry client itself is the
runtime's (``controllers.oci``)."""
