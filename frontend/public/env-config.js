// Development defaults. In the container, docker-entrypoint.sh overwrites this file at start,
// so one build serves every environment.
window._env_ = { API_BASE_URL: "/api", WS_URL: "/ws", ENVIRONMENT: "development" };
