// A form with data-confirm="question" asks before it is sent (the portal's "Revoke" buttons).
// A file, not an onsubmit="" attribute: the Content-Security-Policy runs no inline script.
document.addEventListener("submit", (event) => {
  const question = event.target.dataset && event.target.dataset.confirm;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
