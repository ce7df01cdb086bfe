"""Events: the hook specifications, the contexts sinks receive, and property schemas."""
