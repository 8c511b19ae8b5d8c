// The report form with scripts: solve the proof of work before sending (docs/public.md,
// "Challenges"), so the report counts against the larger per-address budget. The form is
// still posted as a plain form (the server renders answers and refusals alike); without
// scripts, or when the challenge cannot be fetched, the form token alone is used.
(function () {
  "use strict";
  var form = document.getElementById("report-form");
  if (!form || !window.crypto || !crypto.subtle || !window.fetch || !window.TextEncoder) {
    return;
  }
  var encoder = new TextEncoder();
  // Digests in flight at once: one awaited digest at a time spends most of its time in the
  // promise round trip; batches keep Web Crypto busy.
  var BATCH = 256;

  function zeroBits(buffer) {
    var bytes = new Uint8Array(buffer), n = 0;
    for (var i = 0; i < bytes.length; i++) {
      if (bytes[i] !== 0) { return n + Math.clz32(bytes[i]) - 24; }
      n += 8;
    }
    return n;
  }

  async function solve(challenge, bits) {
    for (var base = 0; ; base += BATCH) {
      var tries = [];
      for (var i = 0; i < BATCH; i++) {
        tries.push(crypto.subtle.digest("SHA-256",
          encoder.encode(challenge + ":" + (base + i).toString(16))));
      }
      var hashes = await Promise.all(tries);
      for (var j = 0; j < BATCH; j++) {
        if (zeroBits(hashes[j]) >= bits) { return (base + j).toString(16); }
      }
    }
  }

  var sending = false;
  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    if (sending) { return; }
    sending = true;
    document.getElementById("report-working").hidden = false;
    try {
      var answer = await fetch(form.dataset.challenge, { headers: { accept: "application/json" } });
      if (!answer.ok) { throw new Error("challenge " + answer.status); }
      var challenge = await answer.json();
      form.elements.pow_solution.value = await solve(challenge.challenge,
                                                     challenge.difficulty_bits);
      form.elements.pow_challenge.value = challenge.challenge;
    } catch (e) {
      form.elements.pow_challenge.value = "";
      form.elements.pow_solution.value = "";
    }
    form.submit();   // does not fire "submit" again
  });
})();
