// The models page: while a retraining runs, show its phase every two seconds; reload when it ends.
(function () {
  const progress = document.getElementById("retrain-progress");
  if (!progress || progress.dataset.state !== "running") return;
  const timer = setInterval(async function () {
    const response = await fetch("/models/retrain/progress", {credentials: "same-origin"});
    if (!response.ok) return;
    const status = await response.json();
    progress.textContent = "Retraining: " + status.state + (status.phase ? " · " + status.phase : "") +
      (status.error ? " · " + status.error : "");
    if (status.state !== "running") { clearInterval(timer); window.location.reload(); }
  }, 2000);
})();
