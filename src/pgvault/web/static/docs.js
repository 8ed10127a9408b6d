// Starts Swagger UI (from the swagger-ui-bundle package, served at /docs/assets) on the
// service's own OpenAPI schema; no request leaves the server's origin.
"use strict";
window.addEventListener("load", function () {
  window.ui = window.SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    validatorUrl: null
  });
});
