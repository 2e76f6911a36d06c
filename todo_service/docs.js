// Starts Swagger UI on /docs (todo_service/docs.py). A file rather than an inline script, so that the
// page's Content-Security-Policy can refuse all inline code.
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    domNode: root,
    deepLinking: true,
    displayRequestDuration: true,
    validatorUrl: null, // the badge would fetch from another origin
    layout: "BaseLayout",
  });
});
