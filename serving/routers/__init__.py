"""HTTP routes, one module per resource. Each module keeps its logic in a plain async function
(`recommend(rt, request)`, ...) that the route calls, so the gRPC servicer (issue 7) can call it too."""
