// Render the \( \) and \[ \] spans written by pymdownx.arithmatex (generic mode) with the site's own KaTeX, on every
// page load and on Material's instant navigation.
document$.subscribe(({ body }) => {
  renderMathInElement(body, {
    delimiters: [
      { left: "\\(", right: "\\)", display: false },
      { left: "\\[", right: "\\]", display: true },
    ],
    throwOnError: false,
  });
});
