// pydata-sphinx-theme takes the colour mode from localStorage and logs a console error on a
// reader's first visit, when none is stored yet: start from the theme's default instead.
if (!document.documentElement.dataset.mode) {
  document.documentElement.dataset.mode = document.documentElement.dataset.defaultMode || "auto";
}
