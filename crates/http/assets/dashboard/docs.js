// The API explorer: Swagger UI over this server's OpenAPI document. "Authorize" takes the
// management key (either scheme) or an API key; nothing is kept after the page is closed.
"use strict";
window.ui = SwaggerUIBundle({
  url: "/api/v1/openapi.json",
  dom_id: "#swagger",
  deepLinking: true,
  tryItOutEnabled: true,
  persistAuthorization: false,
  // The public validator would be a request to another host.
  validatorUrl: null,
});
