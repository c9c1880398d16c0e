// tessera: a C++ main for a Verilated tessera core that moves host bytes in bulk.
//
// Built by tessera.sim.vsim (which passes --prefix Vcore, so the model class is always Vcore).
// The core is a TesseraCore behind HostLinkSignature: clk, rst (synchronous, active high), the
// host -> core byte stream i__payload/i__valid/i__ready, the core -> host byte stream
// o__payload/o__valid/o__ready, and busy/error. Verilator spells the Amaranth port name
// "i__valid" as "i___05Fvalid" (it escapes "__", which it reserves for itself).
//
// Timing. One loop iteration is one clock cycle: the stream inputs are set while clk is low and
// the model is evaluated, the handshakes (valid & ready) are sampled, then clk rises. So a byte
// is transferred exactly when the core sees valid & ready at a rising edge, as in the cocotb
// testbench; the core's own cycle counters (what STATUS reports) see the same clock. `i`
// presents the next pending host byte every cycle (valid never waits on ready) and `o__ready`
// is always high.
//
// When to block. The harness reads its input file descriptor only when it has no pending host
// byte. It blocks on it only when additionally the core is not busy and nothing happened (no
// byte in or out, busy low) for --quiet cycles; otherwise it keeps ticking and checks the
// descriptor without blocking every --poll cycles, so a RUN keeps executing while the host
// thinks or waits. Collected output is written whenever the output stream has been quiet for
// --quiet cycles, when it grows past 64 KiB, and always before blocking.
//
// Modes.
//   --framed (what tessera.sim.vsim uses): both directions carry frames (little-endian).
//     host -> harness: 'D' u32 n, n bytes  host bytes for `i`
//                      'I' u32 n           tick n cycles (after the earlier bytes went in)
//                      'C'                 report the cycle count (answered with 'C')
//                      'Q'                 finish: answered with 'X', then exit 0
//     harness -> host: 'D' u32 n, n bytes  core output bytes
//                      'C' u64 cycles      answer to 'C'
//                      'B' u64 consumed, u64 cycles
//                                          about to block: `consumed` input bytes were read
//                                          and all of them processed, the core is idle and quiet
//                      'X' u64 cycles      exiting
//     End of input acts as 'Q'.
//   --raw (default): plain bytes both ways (a file, a pipe, `tessera` over a pty). At end of
//     input the harness runs until the core is idle and quiet, writes the output and exits.
//   --pty: raw mode behind a new pseudo-terminal; its path is printed as the first stdout line.
//     With --ctl-fd N the harness also reads control bytes from descriptor N: 'C' is answered
//     on stdout with a line "cycles <total> active <active>" (see the board mode); 'I' u32 n
//     (little-endian) ticks n more cycles even when everything is quiet (time passing on a
//     board while its host waits) and then answers "idled <total> active <active>".
//
// Board mode (compiled with -DTESSERA_BOARD; tessera.sim.vsim.VerilatorBoard). The model is a
// board top without its pins and clocking (tessera.fpga.top.LinkTop: clk, rst, rx, tx, busy and
// the other LEDs) and the host's bytes are *line* bytes: each one is sent on `rx` as an 8N1
// frame of --uart N cycles per bit (start, 8 data bits LSB first, stop; back to back while
// bytes are pending), and `tx` is decoded the same way (sampled in the middle of each bit), so
// the UART and the framed link run at the board's clock and baud rate. The harness blocks only
// when no line bit is moving, the core is not busy and --quiet cycles passed. "active" cycles
// are those within 256 cycles of activity (a line bit, busy, a byte): the time a board with an
// instant host would take.
// Cycles since reset are reported on stderr at exit ("vharness: <n> cycles ..."); SIGTERM and
// SIGINT stop the harness at once, with that report.

#include "Vcore.h"
#include "verilated.h"

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <termios.h>
#include <unistd.h>

namespace {

volatile sig_atomic_t g_signal = 0;   // SIGTERM/SIGINT: stop at once, report, exit

void on_signal(int sig) { g_signal = sig; }

struct Options {
    bool framed = false;
    bool pty = false;
    int in_fd = 0;
    int out_fd = 1;
    uint64_t quiet = 64;
    uint64_t poll_every = 256;
    uint64_t reset_cycles = 4;
    uint64_t max_cycles = 0;   // 0: no limit
    int ctl_fd = -1;           // --ctl-fd: control bytes ('C': report cycles on stdout)
    uint64_t uart = 0;         // board mode: cycles per UART bit (0: not given)
};

[[noreturn]] void die(const char* what) {
    std::fprintf(stderr, "vharness: %s: %s\n", what, std::strerror(errno));
    std::exit(3);
}

uint64_t parse_u64(const char* flag, const char* text) {
    char* end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(text, &end, 10);
    if (errno || end == text || *end) {
        std::fprintf(stderr, "vharness: %s must be a non-negative integer, not '%s'\n", flag, text);
        std::exit(2);
    }
    return v;
}

class Harness {
public:
    Harness(Vcore* top, const Options& opt) : top_(top), opt_(opt) {
        in_.reserve(1 << 16);
        out_.reserve(1 << 16);
    }

    int run() {
        reset();
        t0_ = std::chrono::steady_clock::now();
        loop();
        if (g_signal)
            std::fprintf(stderr, "vharness: stopping on signal %d\n", int(g_signal));
        else if (stop_)
            std::fprintf(stderr, "vharness: stopping at --max-cycles %llu\n",
                         (unsigned long long)opt_.max_cycles);
        finish();
        return 0;
    }

private:
    Vcore* top_;
    Options opt_;
    uint64_t cycle_ = 0;
    uint64_t last_activity_ = 0;   // last cycle with a byte in or out, or busy high
    uint64_t last_out_ = 0;        // last cycle with a byte out
    std::vector<uint8_t> in_;      // bytes read from in_fd, not yet processed
    size_t in_pos_ = 0;
    uint64_t consumed_ = 0;        // bytes read from in_fd in total
    uint64_t data_left_ = 0;       // framed: bytes of the current 'D' frame not yet in `i`
    uint64_t idle_left_ = 0;       // framed: cycles of the current 'I' frame still to tick
    std::vector<uint8_t> out_;     // framed: the output stream (frames); raw: plain bytes
    size_t out_data_at_ = SIZE_MAX;  // framed: offset of the open 'D' frame header in out_
    bool eof_ = false;
    bool quit_ = false;
    uint64_t active_ = 0;          // cycles within 256 cycles of activity
    uint64_t ctl_idle_ = 0;        // --ctl-fd 'I': cycles still to tick
    std::vector<uint8_t> ctl_in_;  // --ctl-fd: bytes of an incomplete command
#ifdef TESSERA_BOARD
    uint64_t ser_left_ = 0;        // cycles left of the frame being sent on rx
    uint8_t ser_byte_ = 0;
    uint64_t des_t_ = 0;           // cycles since the start bit's falling edge on tx (0: idle)
    uint16_t des_bits_ = 0;
    bool des_break_ = false;       // a bad stop bit: wait for the line to go high
#endif
    bool stop_ = false;            // --max-cycles reached, or a signal
    std::chrono::steady_clock::time_point t0_;

    void reset() {
        top_->clk = 0;
        top_->rst = 1;
#ifdef TESSERA_BOARD
        top_->rx = 1;
#else
        top_->i___05Fvalid = 0;
        top_->i___05Fpayload = 0;
        top_->o___05Fready = 1;
#endif
        top_->eval();
        for (uint64_t i = 0; i < opt_.reset_cycles; ++i) {
            top_->clk = 1;
            top_->eval();
            top_->clk = 0;
            top_->eval();
        }
        top_->rst = 0;
        top_->eval();
    }

    // -- output ---------------------------------------------------------------------------
    void put_u32(uint32_t v) {
        for (int i = 0; i < 4; ++i) out_.push_back(uint8_t(v >> (8 * i)));
    }
    void put_u64(uint64_t v) {
        for (int i = 0; i < 8; ++i) out_.push_back(uint8_t(v >> (8 * i)));
    }
    void close_data_frame() {
        if (out_data_at_ == SIZE_MAX) return;
        uint32_t n = uint32_t(out_.size() - out_data_at_ - 5);
        std::memcpy(&out_[out_data_at_ + 1], &n, 4);   // little-endian hosts only (x86, arm)
        out_data_at_ = SIZE_MAX;
    }
    void out_byte(uint8_t b) {
        if (opt_.framed && out_data_at_ == SIZE_MAX) {
            out_data_at_ = out_.size();
            out_.push_back('D');
            put_u32(0);
        }
        out_.push_back(b);
    }
    void control(char tag) {
        close_data_frame();
        out_.push_back(uint8_t(tag));
    }
    void flush() {
        close_data_frame();
        size_t off = 0;
        while (off < out_.size()) {
            ssize_t n = ::write(opt_.out_fd, out_.data() + off, out_.size() - off);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN) {
                    pollfd p{opt_.out_fd, POLLOUT, 0};
                    ::poll(&p, 1, -1);
                    continue;
                }
                if (errno == EPIPE) {      // the host went away
                    std::fprintf(stderr, "vharness: output closed by the host at cycle %llu\n",
                                 (unsigned long long)cycle_);
                    std::exit(4);
                }
                die("write");
            }
            off += size_t(n);
        }
        out_.clear();
    }

    // -- input ----------------------------------------------------------------------------
    size_t in_avail() const { return in_.size() - in_pos_; }

    // Read what the descriptor has; block until something arrives if `block`. Returns false
    // at end of input.
    bool fill(bool block) {
        if (in_pos_ == in_.size()) {
            in_.clear();
            in_pos_ = 0;
        } else if (in_pos_ > (1u << 20)) {
            in_.erase(in_.begin(), in_.begin() + in_pos_);
            in_pos_ = 0;
        }
        for (;;) {
            pollfd p[2] = {{opt_.in_fd, POLLIN, 0}, {opt_.ctl_fd, POLLIN, 0}};
            int r = ::poll(p, opt_.ctl_fd >= 0 ? 2 : 1, block ? -1 : 0);
            if (r < 0) {
                if (errno == EINTR) {
                    if (g_signal) return true;
                    continue;
                }
                die("poll");
            }
            if (r == 0) return true;   // nothing now
            if (opt_.ctl_fd >= 0 && (p[1].revents & (POLLIN | POLLHUP))) {
                control_input();
                if (ctl_idle_ > 0) block = false;      // time must pass: back to the loop
                if (!(p[0].revents & POLLIN)) {
                    if (!block) return true;
                    continue;
                }
            }
            size_t old = in_.size();
            in_.resize(old + (1 << 16));
            ssize_t n = ::read(opt_.in_fd, in_.data() + old, 1 << 16);
            if (n < 0) {
                in_.resize(old);
                if (errno == EINTR) continue;
                if (errno == EAGAIN) {
                    if (block) continue;
                    return true;
                }
                if (errno == EIO && opt_.pty) {   // no terminal open on the far side
                    if (!block) return true;
                    ::usleep(10000);
                    continue;
                }
                die("read");
            }
            in_.resize(old + size_t(n));
            if (n == 0) {
                if (opt_.pty) {   // cannot happen while we hold the slave open; be safe
                    ::usleep(10000);
                    if (!block) return true;
                    continue;
                }
                return false;
            }
            consumed_ += uint64_t(n);
            return true;
        }
    }

    // --ctl-fd: 'C' -> "cycles <total> active <active>\n" on stdout; 'I' u32 n -> tick n
    // cycles, then "idled <total> active <active>\n".
    void control_input() {
        uint8_t buf[64];
        ssize_t n = ::read(opt_.ctl_fd, buf, sizeof buf);
        if (n <= 0) {                  // the host closed it: stop listening
            opt_.ctl_fd = -1;
            return;
        }
        ctl_in_.insert(ctl_in_.end(), buf, buf + n);
        size_t i = 0;
        while (i < ctl_in_.size()) {
            if (ctl_in_[i] == 'C') {
                report("cycles");
                i += 1;
            } else if (ctl_in_[i] == 'I') {
                if (ctl_in_.size() - i < 5) break;
                uint32_t v = 0;
                for (int k = 0; k < 4; ++k) v |= uint32_t(ctl_in_[i + 1 + k]) << (8 * k);
                if (v == 0) report("idled");
                ctl_idle_ += v;
                i += 5;
            } else {
                std::fprintf(stderr, "vharness: bad control byte 0x%02x\n", ctl_in_[i]);
                std::exit(2);
            }
        }
        ctl_in_.erase(ctl_in_.begin(), ctl_in_.begin() + i);
    }

    void report(const char* what) {
        std::printf("%s %llu active %llu\n", what, (unsigned long long)cycle_,
                    (unsigned long long)active_);
        std::fflush(stdout);
    }

    uint32_t get_u32(size_t at) const {
        uint32_t v = 0;
        for (int i = 0; i < 4; ++i) v |= uint32_t(in_[at + i]) << (8 * i);
        return v;
    }

    // Framed mode: decode control frames until a data byte is pending, an idle is running,
    // or the buffer ends inside a frame header.
    void parse_frames() {
        while (data_left_ == 0 && idle_left_ == 0 && !quit_ && in_avail() > 0) {
            uint8_t tag = in_[in_pos_];
            switch (tag) {
            case 'D':
            case 'I':
                if (in_avail() < 5) return;
                (tag == 'D' ? data_left_ : idle_left_) = get_u32(in_pos_ + 1);
                in_pos_ += 5;
                break;
            case 'C':
                in_pos_ += 1;
                control('C');
                put_u64(cycle_);
                flush();
                break;
            case 'Q':
                in_pos_ += 1;
                quit_ = true;
                break;
            default:
                std::fprintf(stderr, "vharness: bad frame tag 0x%02x after %llu input bytes\n",
                             tag, (unsigned long long)(consumed_ - in_avail()));
                std::exit(2);
            }
        }
    }

    // Is a host byte ready to present on `i`?
    bool byte_pending() {
        if (opt_.framed) {
            parse_frames();
            return data_left_ > 0 && in_avail() > 0;
        }
        return in_avail() > 0;
    }

    bool quiet() const { return cycle_ - last_activity_ >= opt_.quiet; }

    // -- the cycle loop -------------------------------------------------------------------
    // Read what the descriptor has (blocking if asked); note the end of input.
    void read_more(bool block) {
        if (!eof_ && !fill(block)) eof_ = true;
        if (g_signal) stop_ = true;
    }

    // The scheduling loop: drive pending bytes, tick through idles and RUNs, block only when
    // the host has to speak next. Returns at 'Q', at end of input (raw mode: once the core is
    // idle and quiet) or at --max-cycles.
    void loop() {
        while (!stop_) {
            if (byte_pending() || idle_left_ > 0) {
                tick_while_pending();
                read_more(false);
                continue;
            }
            if (quit_) return;
            if (ctl_idle_ > 0) {       // --ctl-fd 'I': time passes even if all is quiet
                tick_free(ctl_idle_ < opt_.poll_every ? ctl_idle_ : opt_.poll_every);
                read_more(false);
                continue;
            }
            const bool idle = !top_->busy && quiet();
            if (eof_) {
                if (opt_.framed || idle) return;
                tick_free(opt_.poll_every);
                continue;
            }
            if (idle) {
                // About to block: everything read is processed and the core is idle.
                if (opt_.framed) {
                    control('B');
                    put_u64(consumed_);
                    put_u64(cycle_);
                }
                flush();
                read_more(true);
                continue;
            }
            // Busy, or not quiet yet: keep ticking, look at the descriptor now and then.
            tick_free(opt_.poll_every);
            read_more(false);
        }
    }

#ifdef TESSERA_BOARD
    // One cycle of the board top: `drive` offers the next line byte to the rx serializer (it
    // is taken when the serializer is idle: in_fire), tx is decoded into output bytes.
    inline void cycle_once(bool drive, uint8_t payload) {
        const uint64_t div = opt_.uart;
        bool in_fire = false;
        if (ser_left_ == 0 && drive) {
            ser_byte_ = payload;
            ser_left_ = 10 * div;
            in_fire = true;
        }
        uint8_t level = 1;
        if (ser_left_) {
            const uint64_t bit = (10 * div - ser_left_) / div;   // 0 start, 1..8 data, 9 stop
            level = bit == 0 ? 0 : bit <= 8 ? (ser_byte_ >> (bit - 1)) & 1 : 1;
            --ser_left_;
        }
        top_->rx = level;
        top_->eval();
        const bool txl = top_->tx;
        const bool busy = top_->busy;
        bool out_fire = false;
        uint8_t ob = 0;
        if (des_break_) {
            if (txl) des_break_ = false;
        } else if (des_t_ == 0) {
            if (!txl) {
                des_t_ = 1;
                des_bits_ = 0;
            }
        } else {
            const uint64_t t = des_t_ - 1;                 // cycles since the falling edge
            if (t >= div / 2 && (t - div / 2) % div == 0) {
                const uint64_t k = (t - div / 2) / div;    // 0 start, 1..8 data, 9 stop
                if (k == 0 && txl) {
                    des_t_ = 0;                            // a glitch, not a start bit
                } else if (k >= 1 && k <= 8) {
                    des_bits_ |= uint16_t(txl) << (k - 1);
                } else if (k == 9) {
                    if (txl) {
                        out_fire = true;
                        ob = uint8_t(des_bits_);
                    } else {
                        des_break_ = true;
                    }
                    des_t_ = 0;
                }
            }
            if (des_t_) ++des_t_;
        }
        top_->clk = 1;
        top_->eval();
        top_->clk = 0;
        ++cycle_;
        if (ctl_idle_ && --ctl_idle_ == 0) report("idled");
        if (in_fire) {
            ++in_pos_;
            if (opt_.framed) --data_left_;
        }
        if (out_fire) {
            out_byte(ob);
            last_out_ = cycle_;
        }
        if (in_fire || out_fire || busy || ser_left_ || des_t_ || !txl) last_activity_ = cycle_;
        if (cycle_ - last_activity_ < 256) ++active_;
        if (opt_.max_cycles && cycle_ >= opt_.max_cycles) stop_ = true;
        if (!out_.empty() && (cycle_ - last_out_ >= opt_.quiet || out_.size() >= (1u << 16) ||
                              opt_.pty))
            flush();
    }
#else
    inline void cycle_once(bool drive, uint8_t payload) {
        top_->i___05Fvalid = drive;
        top_->i___05Fpayload = payload;
        top_->eval();
        const bool in_fire = drive && top_->i___05Fready;
        const bool out_fire = top_->o___05Fvalid;
        const uint8_t ob = top_->o___05Fpayload;
        const bool busy = top_->busy;
        top_->clk = 1;
        top_->eval();
        top_->clk = 0;
        ++cycle_;
        if (ctl_idle_ && --ctl_idle_ == 0) report("idled");
        if (in_fire) {
            ++in_pos_;
            if (opt_.framed) --data_left_;
            last_activity_ = cycle_;
        }
        if (out_fire) {
            out_byte(ob);
            last_activity_ = last_out_ = cycle_;
        }
        if (busy) last_activity_ = cycle_;
        if (cycle_ - last_activity_ < 256) ++active_;
        if (opt_.max_cycles && cycle_ >= opt_.max_cycles) stop_ = true;
        if (!out_.empty() && (cycle_ - last_out_ >= opt_.quiet || out_.size() >= (1u << 16)))
            flush();
    }
#endif

    // Tick while host bytes are pending in the buffer (or an idle frame runs).
    void tick_while_pending() {
        while (!stop_) {
            if (opt_.framed) {
                if (data_left_ > 0 && in_avail() > 0) {
                    cycle_once(true, in_[in_pos_]);
                    continue;
                }
                if (data_left_ == 0 && idle_left_ > 0) {
                    cycle_once(false, 0);
                    --idle_left_;
                    continue;
                }
                if (data_left_ == 0 && in_avail() > 0 && !quit_) {
                    parse_frames();
                    if (data_left_ > 0 || idle_left_ > 0) continue;
                }
                return;
            }
            if (in_avail() == 0) return;
            cycle_once(true, in_[in_pos_]);
        }
    }

    void tick_free(uint64_t n) {
        for (uint64_t i = 0; i < n && !stop_; ++i) cycle_once(false, 0);
    }

    void finish() {
        if (opt_.framed) {
            control('X');
            put_u64(cycle_);
        }
        flush();
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
        rusage ru{};
        ::getrusage(RUSAGE_SELF, &ru);
        double cpu = double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                     1e-6 * double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
        std::fprintf(stderr,
                     "vharness: %llu cycles in %.3f s (%.0f cycles/s); %.3f s of CPU "
                     "(%.0f cycles per CPU second)\n",
                     (unsigned long long)cycle_, s, s > 0 ? double(cycle_) / s : 0.0, cpu,
                     cpu > 0 ? double(cycle_) / cpu : 0.0);
    }
};

void usage() {
    std::fprintf(stderr,
                 "usage: vharness [--framed | --raw | --pty] [--in-fd N] [--out-fd N] "
                 "[--quiet N] [--poll N] [--reset-cycles N] [--max-cycles N] [--ctl-fd N] "
                 "[--uart N]\n");
    std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
    Options opt;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&](const char* flag) {
            if (i + 1 >= argc) usage();
            return parse_u64(flag, argv[++i]);
        };
        if (a == "--framed") opt.framed = true;
        else if (a == "--raw") opt.framed = false;
        else if (a == "--pty") opt.pty = true;
        else if (a == "--in-fd") opt.in_fd = int(value("--in-fd"));
        else if (a == "--out-fd") opt.out_fd = int(value("--out-fd"));
        else if (a == "--quiet") opt.quiet = value("--quiet");
        else if (a == "--poll") opt.poll_every = value("--poll");
        else if (a == "--reset-cycles") opt.reset_cycles = value("--reset-cycles");
        else if (a == "--max-cycles") opt.max_cycles = value("--max-cycles");
        else if (a == "--ctl-fd") opt.ctl_fd = int(value("--ctl-fd"));
        else if (a == "--uart") opt.uart = value("--uart");
        else usage();
    }
    if (opt.quiet < 1 || opt.poll_every < 1) {
        std::fprintf(stderr, "vharness: --quiet and --poll must be >= 1\n");
        return 2;
    }
#ifdef TESSERA_BOARD
    if (opt.uart < 4) {
        std::fprintf(stderr, "vharness: a board-top build needs --uart N (cycles per bit, >= 4)\n");
        return 2;
    }
#endif
    if (opt.pty) {
        opt.framed = false;
        int master = ::posix_openpt(O_RDWR | O_NOCTTY);
        if (master < 0 || ::grantpt(master) || ::unlockpt(master)) die("posix_openpt");
        const char* name = ::ptsname(master);
        if (!name) die("ptsname");
        // Hold the slave open ourselves, so the master never reads end-of-file or EIO when a
        // client closes its end, and put the line in raw mode (no echo, no CR/LF mapping).
        int slave = ::open(name, O_RDWR | O_NOCTTY);
        if (slave < 0) die("open pty slave");
        termios t{};
        if (::tcgetattr(slave, &t) == 0) {
            ::cfmakeraw(&t);
            ::tcsetattr(slave, TCSANOW, &t);
        }
        std::printf("%s\n", name);
        std::fflush(stdout);
        opt.in_fd = opt.out_fd = master;
    }
    ::signal(SIGPIPE, SIG_IGN);   // a closed output is reported as EPIPE instead
    struct sigaction sa{};
    sa.sa_handler = on_signal;    // no SA_RESTART: a blocking poll() returns EINTR
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGTERM, &sa, nullptr);
    ::sigaction(SIGINT, &sa, nullptr);

    const std::unique_ptr<VerilatedContext> ctx{new VerilatedContext};
    ctx->commandArgs(1, argv);
    const std::unique_ptr<Vcore> top{new Vcore{ctx.get(), "core"}};
    Harness h(top.get(), opt);
    int rc = h.run();
    top->final();
    return rc;
}
