// Starts Redoc on /api/v1/docs (templates/drf_spectacular/redoc.html): a file, not an inline
// script, so the page's Content-Security-Policy needs no exception for scripts.
(function () {
  const container = document.getElementById("redoc-container");
  const settings = JSON.parse(container.dataset.settings || "{}");
  Redoc.init(container.dataset.specUrl, settings, container);
})();
