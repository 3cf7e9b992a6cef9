// Round trips of fixed-size, memcpy-safe samples with loans on both sides,
// for scripts/cyclone-bench.sh: whether they go through shmslot or UDP is
// decided by CYCLONEDDS_URI alone.
//
//   cyclone_pingpong ping 8|1k|64k|1m SECONDS
//   cyclone_pingpong pong 8|1k|64k|1m SECONDS
//
// ping: writes a loaned sample on "ping_<size>" (only its first 8 bytes, a
//       sequence number, are set); its listener takes the answer on
//       "pong_<size>" and sends the next ping, for SECONDS after a 1 s
//       warm-up; prints "RESULT p50_us X p99_us Y count N".
// pong: its listener answers every ping with a loaned sample carrying its
//       number, for SECONDS (plus 3).
// Both: reliable, keep-last 1, listener mode (the samples are handled on the
// thread that delivers them, as ddsperf does by default); print "ready" once
// matched.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <inttypes.h>
#include <stdatomic.h>
#include "dds/dds.h"
#include "bench.h"

static void die (const char *what, dds_return_t rc)
{
  fprintf (stderr, "cyclone_pingpong: %s: %s\n", what, dds_strretcode (rc));
  exit (2);
}

static const dds_topic_descriptor_t *descriptor (const char *size)
{
  if (strcmp (size, "8") == 0) return &shmslot_bench_B8_desc;
  if (strcmp (size, "1k") == 0) return &shmslot_bench_B1k_desc;
  if (strcmp (size, "64k") == 0) return &shmslot_bench_B64k_desc;
  if (strcmp (size, "1m") == 0) return &shmslot_bench_B1m_desc;
  return NULL;
}

static int cmp (const void *a, const void *b)
{
  const uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
  return (x > y) - (x < y);
}

// Writes a loaned sample whose first 8 bytes are `t`.
static void send_loan (dds_entity_t wr, uint64_t t)
{
  void *loan = NULL;
  dds_return_t rc;
  if ((rc = dds_request_loan (wr, &loan)) < 0)
    die ("request loan", rc);
  memcpy (loan, &t, sizeof t);
  if ((rc = dds_write (wr, loan)) < 0)
    die ("write", rc);
}

// What the listeners share with the main thread.
static dds_entity_t writer;
static dds_time_t warm, end;
static uint64_t seq;       // the ping in flight (ping side)
static dds_time_t sent_at; // when it was written
static uint32_t *rtt; // round trips in ns (below 4 s)
static size_t cap = 1 << 23, n;
static atomic_int done;

// Takes every sample `rd` has (as loans), calls `f` with each first 8 bytes.
static void take_all (dds_entity_t rd, void (*f) (uint64_t))
{
  void *samples[16] = { NULL };
  dds_sample_info_t infos[16];
  int32_t k;
  while ((k = dds_take (rd, samples, infos, 16, 16)) > 0)
  {
    for (int32_t i = 0; i < k; i++)
      if (infos[i].valid_data)
      {
        uint64_t t;
        memcpy (&t, samples[i], sizeof t);
        f (t);
      }
    dds_return_loan (rd, samples, k);
    memset (samples, 0, sizeof samples);
  }
}

static void answer (uint64_t t)
{
  send_loan (writer, t);
}

static void pong_back (uint64_t t)
{
  if (t != seq || atomic_load (&done))
    return;
  const dds_time_t now = dds_time ();
  if (sent_at >= warm && n < cap)
    rtt[n++] = (uint32_t) (now - sent_at);
  if (now >= end)
  {
    atomic_store (&done, 1);
    return;
  }
  sent_at = now;
  send_loan (writer, ++seq);
}

static void on_ping (dds_entity_t rd, void *arg)
{
  (void) arg;
  take_all (rd, answer);
}

static void on_pong (dds_entity_t rd, void *arg)
{
  (void) arg;
  take_all (rd, pong_back);
}

int main (int argc, char **argv)
{
  const dds_topic_descriptor_t *desc = argc == 4 ? descriptor (argv[2]) : NULL;
  const int ping = argc == 4 && strcmp (argv[1], "ping") == 0;
  if (desc == NULL || (!ping && strcmp (argv[1], "pong")))
  {
    fprintf (stderr, "usage: cyclone_pingpong ping|pong 8|1k|64k|1m SECONDS\n");
    return 2;
  }
  const double secs = atof (argv[3]);
  rtt = malloc (cap * sizeof *rtt);
  dds_entity_t pp = dds_create_participant (DDS_DOMAIN_DEFAULT, NULL, NULL);
  if (pp < 0)
    die ("create participant", pp);
  char out_name[32], in_name[32];
  snprintf (out_name, sizeof out_name, "%s_%s", ping ? "ping" : "pong", argv[2]);
  snprintf (in_name, sizeof in_name, "%s_%s", ping ? "pong" : "ping", argv[2]);
  dds_entity_t out_tp = dds_create_topic (pp, desc, out_name, NULL, NULL);
  dds_entity_t in_tp = dds_create_topic (pp, desc, in_name, NULL, NULL);
  if (out_tp < 0 || in_tp < 0)
    die ("create topic", out_tp < 0 ? out_tp : in_tp);
  dds_qos_t *qos = dds_create_qos ();
  dds_qset_reliability (qos, DDS_RELIABILITY_RELIABLE, DDS_SECS (10));
  dds_qset_history (qos, DDS_HISTORY_KEEP_LAST, 1);
  writer = dds_create_writer (pp, out_tp, qos, NULL);
  dds_listener_t *l = dds_create_listener (NULL);
  dds_lset_data_available (l, ping ? on_pong : on_ping);
  dds_entity_t rd = dds_create_reader (pp, in_tp, qos, l);
  dds_delete_listener (l);
  dds_delete_qos (qos);
  if (writer < 0 || rd < 0)
    die ("create endpoint", writer < 0 ? writer : rd);
  dds_publication_matched_status_t pm;
  dds_subscription_matched_status_t sm;
  do {
    dds_sleepfor (DDS_MSECS (10));
    dds_get_publication_matched_status (writer, &pm);
    dds_get_subscription_matched_status (rd, &sm);
  } while (pm.current_count < 1 || sm.current_count < 1);
  printf ("ready\n");
  fflush (stdout);
  warm = dds_time () + DDS_SECS (1);
  end = warm + (dds_duration_t) (secs * 1e9);
  if (ping)
  {
    sent_at = dds_time ();
    seq = 1;
    send_loan (writer, seq);
  }
  while (!atomic_load (&done) && dds_time () < end + DDS_SECS (ping ? 2 : 3))
    dds_sleepfor (DDS_MSECS (20));
  dds_set_listener (rd, NULL);
  atomic_store (&done, 1);
  int rc = 0;
  if (ping)
  {
    if (n == 0)
    {
      fprintf (stderr, "cyclone_pingpong: no round trip measured\n");
      rc = 1;
    }
    else
    {
      qsort (rtt, n, sizeof *rtt, cmp);
      printf ("RESULT p50_us %.2f p99_us %.2f count %zu\n", (double) rtt[n / 2] / 1e3, (double) rtt[n * 99 / 100] / 1e3, n);
    }
  }
  free (rtt);
  dds_delete (pp);
  return rc;
}
