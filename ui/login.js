// The sign-in page: the one-time code is in the link's fragment (#code=…), which browsers
// never send to a server or in a Referer. Take it, clear it from the address bar and
// history, and post it; the server answers with the session cookie and the task list.
// A new link opened over this page changes only the fragment (no new page load): the
// hashchange event signs in with it too.
'use strict';
(function () {
  const form = document.getElementById('login');
  const note = document.getElementById('login-note');
  function signIn() {
    const match = /^#code=([A-Za-z0-9_-]{1,128})$/.exec(window.location.hash);
    window.history.replaceState(null, '', window.location.pathname);
    if (!match) {
      if (note) {
        note.textContent = 'This page needs a sign-in link: run `taskbox ui` on the server\'s machine, ' +
          'or POST /ui/login-link with your bearer token, and open the link it prints.';
      }
      return;
    }
    form.elements.code.value = match[1];
    form.submit();
  }
  window.addEventListener('hashchange', signIn);
  signIn();
})();
